# Figures of the study, PNG (in the report) and PDF, drawn by rnnbench.plots.<function>(*inputs,
# stem): the inputs are declared in the order of the function's arguments.
from rnnbench import plots
from rnnbench.compare import compared_runs, comparison_table


rule plot_success_vs_T:
    input:
        runs=f"{RESULTS}/{{study}}/runs.parquet",
    output:
        png=report(
            f"{RESULTS}/{{study}}/figures/success_vs_T.png",
            caption="../report/success_vs_T.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/{{study}}/figures/success_vs_T.pdf",
    log:
        f"{RESULTS}/{{study}}/logs/plot_success_vs_T.log",
    localrule: True
    run:
        plot_job(plots.success_vs_T, input, output, log)


rule plot_learning_curves:
    input:
        curves=f"{RESULTS}/{{study}}/curves.parquet",
        runs=f"{RESULTS}/{{study}}/runs.parquet",
    output:
        png=report(
            f"{RESULTS}/{{study}}/figures/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/{{study}}/figures/learning_curves.pdf",
    log:
        f"{RESULTS}/{{study}}/logs/plot_learning_curves.log",
    localrule: True
    run:
        plot_job(plots.learning_curves, input, output, log)


rule plot_grad_norms:
    input:
        curves=f"{RESULTS}/{{study}}/curves.parquet",
        runs=f"{RESULTS}/{{study}}/runs.parquet",
    output:
        png=report(
            f"{RESULTS}/{{study}}/figures/grad_norms.png",
            caption="../report/grad_norms.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/{{study}}/figures/grad_norms.pdf",
    log:
        f"{RESULTS}/{{study}}/logs/plot_grad_norms.log",
    localrule: True
    run:
        plot_job(plots.grad_norms, input, output, log)


rule plot_gradflow_vs_lag:
    input:
        gradflow=f"{RESULTS}/{{study}}/gradflow.parquet",
        runs=f"{RESULTS}/{{study}}/runs.parquet",
    output:
        png=report(
            f"{RESULTS}/{{study}}/figures/gradflow_vs_lag.png",
            caption="../report/gradflow_vs_lag.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/{{study}}/figures/gradflow_vs_lag.pdf",
    log:
        f"{RESULTS}/{{study}}/logs/plot_gradflow_vs_lag.log",
    localrule: True
    run:
        plot_job(plots.gradflow_vs_lag, input, output, log)


# Study key `compare`: the comparison table is recomputed from runs.parquet (seeded, so equal to
# tables/comparison.csv) rather than read back from CSV, which would lose its types.
rule plot_comparison:
    input:
        runs=f"{RESULTS}/{{study}}/runs.parquet",
    output:
        png=report(
            f"{RESULTS}/{{study}}/figures/comparison.png",
            caption="../report/comparison.rst",
            category="Figures",
        ),
        pdf=f"{RESULTS}/{{study}}/figures/comparison.pdf",
    params:
        baseline=STUDY.compare.get("baseline"),
        settings=STUDY.compare,
    log:
        f"{RESULTS}/{{study}}/logs/plot_comparison.log",
    localrule: True
    run:
        plot_job(
            lambda runs, stem: plots.comparison(
                comparison_table(compared_runs(runs, params.settings), params.baseline), stem
            ),
            input,
            output,
            log,
        )
