# Figures of the study, PNG (in the report) and PDF: one job per entry of rnnbench.figures.FIGURES
# (its drawing function, the aggregated tables it reads, its caption). Each is a process of its
# own (`rnnbench figure`), so the figures are drawn on every core at once; it does not read the
# workflow again, as a `run:` job in a new process would.
from rnnbench.figures import FIGURES, figure_setting


rule plot:
    input:
        lambda wildcards: [
            f"{RESULTS}/{wildcards.study}/{table}.parquet"
            for table in FIGURES[wildcards.figure].inputs
        ],
    output:
        png=report(
            f"{RESULTS}/{{study}}/figures/{{figure}}.png",
            caption="../report/figure.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/{{study}}/figures/{{figure}}.pdf",
    params:
        caption=lambda wildcards: FIGURES[wildcards.figure].caption,
        setting=lambda wildcards: json.dumps(figure_setting(wildcards.figure, STUDY)),
        study_dir=lambda wildcards: f"{RESULTS}/{wildcards.study}",
        python=PYTHON,
    log:
        f"{RESULTS}/{{study}}/logs/plot/{{figure}}.log",
    localrule: True
    conda:
        "../envs/rnnbench.yaml"
    shell:
        "{params.python} -m rnnbench figure {wildcards.figure} {params.study_dir} "
        "--setting {params.setting:q} > {log} 2>&1"
