# The study's paper tables and figures (study key `paper`; rnnbench.papers.analyse), under
# <results>/<study>/paper/: the same files `rnnbench paper` writes into results/curated/<study>/.
from rnnbench import papers

PAPER_OUTPUTS = (
    [f"{STUDY_DIR}/paper/{p}" for p in papers.outputs(STUDY.paper)] if STUDY.paper else []
)


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
            with logged(log[0]):
                papers.analyse_files(STUDY.paper, input, f"{STUDY_DIR}/paper")
