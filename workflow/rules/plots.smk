# Figures of the study, PNG (in the report) and PDF: one job per entry of rnnbench.figures.FIGURES
# (its drawing function, the aggregated tables it reads, its caption).
from rnnbench.figures import FIGURES, render


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
    log:
        f"{RESULTS}/{{study}}/logs/plot/{{figure}}.log",
    localrule: True
    run:
        with logged(log[0]):
            render(wildcards.figure, f"{RESULTS}/{wildcards.study}", STUDY)
