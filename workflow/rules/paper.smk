# The study's paper tables and figures (study key `paper`; rnnbench.papers.analyse), under
# <results>/<study>/paper/: the same files `rnnbench paper` writes into results/curated/<study>/.
if STUDY.paper:

    rule paper:
        input:
            runs=f"{STUDY_DIR}/runs.parquet",
            curves=f"{STUDY_DIR}/curves.parquet",
            gradflow=f"{STUDY_DIR}/gradflow.parquet",
        output:
            PAPER_OUTPUTS,
        log:
            f"{STUDY_DIR}/logs/paper.log",
        localrule: True
        run:
            paper_job(input, log)
