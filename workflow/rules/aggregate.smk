# All run folders of the study -> runs/curves/gradflow tables and the summary tables.
from rnnbench.aggregate import aggregate_study
from rnnbench.compare import write_comparison


rule aggregate:
    input:
        curves=run_files("curve"),
        gradflow=run_files("gradflow"),
        summaries=run_files("summary"),
    output:
        runs=f"{RESULTS}/{{study}}/runs.parquet",
        curves=f"{RESULTS}/{{study}}/curves.parquet",
        gradflow=f"{RESULTS}/{{study}}/gradflow.parquet",
        success=report(
            f"{RESULTS}/{{study}}/tables/success.csv",
            caption="../report/success_table.rst",
            category="Tables",
        ),
        success_md=f"{RESULTS}/{{study}}/tables/success.md",
        longest_T=report(
            f"{RESULTS}/{{study}}/tables/longest_T.csv",
            caption="../report/longest_T_table.rst",
            category="Tables",
        ),
        longest_T_md=f"{RESULTS}/{{study}}/tables/longest_T.md",
    log:
        f"{RESULTS}/{{study}}/logs/aggregate.log",
    localrule: True
    run:
        with logged(log[0]):
            aggregate_study(f"{RESULTS}/{wildcards.study}", STUDY)


# Study key `compare`: every other method against the baseline, and a leaderboard of all (with
# `tune`, on the test seeds' runs at the value chosen on the validation seeds).
rule compare:
    input:
        runs=f"{RESULTS}/{{study}}/runs.parquet",
    output:
        comparison=report(
            f"{RESULTS}/{{study}}/tables/comparison.csv",
            caption="../report/comparison_table.rst",
            category="Tables",
        ),
        comparison_md=f"{RESULTS}/{{study}}/tables/comparison.md",
        leaderboard=report(
            f"{RESULTS}/{{study}}/tables/leaderboard.csv",
            caption="../report/leaderboard_table.rst",
            category="Tables",
        ),
        leaderboard_md=f"{RESULTS}/{{study}}/tables/leaderboard.md",
        # compare.tune: the value chosen per method and cell on the validation seeds (else empty)
        tuning=f"{RESULTS}/{{study}}/tables/tuning.csv",
        tuning_md=f"{RESULTS}/{{study}}/tables/tuning.md",
    params:
        baseline=STUDY.compare.get("baseline"),
        tune=STUDY.compare.get("tune"),
        validation_seeds=STUDY.compare.get("validation_seeds", []),
    log:
        f"{RESULTS}/{{study}}/logs/compare.log",
    localrule: True
    run:
        with logged(log[0]):
            write_comparison(f"{RESULTS}/{wildcards.study}", params.baseline, params.tune,
                             params.validation_seeds)
