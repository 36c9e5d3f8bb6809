# Figures of the study, PNG (in the report) and the other formats of the study key
# figure_formats (default PDF): one job draws every entry of rnnbench.figures.FIGURES that the
# study has (its drawing function, the aggregated tables it reads, its caption). `rnnbench figures` imports matplotlib and pandas once and forks a worker
# per thread, so the figures are drawn on every core at once without a process start each.
from rnnbench.figures import FIGURES, figure_setting

STUDY_FIGURES = figures_for(STUDY)


rule figures:
    input:
        lambda wildcards: sorted(
            {f"{RESULTS}/{wildcards.study}/{table}.parquet"
             for name in STUDY_FIGURES for table in FIGURES[name].inputs}
        ),
    output:
        # The report shows each PNG with its entry's caption (workflow/report/figure.rst).
        report(
            directory(f"{RESULTS}/{{study}}/figures"),
            patterns=["{figure}.png"],
            caption="../report/figure.rst",
            category="Figures",
        ),
    params:
        captions={name: FIGURES[name].caption for name in STUDY_FIGURES},
        settings=json.dumps({name: figure_setting(name, STUDY) for name in STUDY_FIGURES}),
        study_dir=lambda wildcards: f"{RESULTS}/{wildcards.study}",
        formats=",".join(STUDY.figure_formats),
        python=PYTHON,
    threads: max(1, len(STUDY_FIGURES))  # Snakemake lowers it to --cores
    log:
        f"{RESULTS}/{{study}}/logs/figures.log",
    localrule: True
    conda:
        "../envs/rnnbench.yaml"
    shell:
        "{params.python} -m rnnbench figures {params.study_dir} "
        "--settings {params.settings:q} --jobs {threads} --formats {params.formats} "
        "> {log} 2>&1"
