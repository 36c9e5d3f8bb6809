# Figures of the study, PNG (in the report) and PDF; each function lives in rnnbench.plots.
import pandas as pd

from rnnbench import plots


def figure_stem(output):
    return str(Path(output.png).with_suffix(""))


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
        with logged(log[0]):
            plots.success_vs_T(pd.read_parquet(input.runs), figure_stem(output))


rule plot_learning_curves:
    input:
        runs=f"{RESULTS}/{{study}}/runs.parquet",
        curves=f"{RESULTS}/{{study}}/curves.parquet",
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
        with logged(log[0]):
            runs, curves = pd.read_parquet(input.runs), pd.read_parquet(input.curves)
            plots.learning_curves(curves, runs, figure_stem(output))


rule plot_grad_norms:
    input:
        runs=f"{RESULTS}/{{study}}/runs.parquet",
        curves=f"{RESULTS}/{{study}}/curves.parquet",
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
        with logged(log[0]):
            runs, curves = pd.read_parquet(input.runs), pd.read_parquet(input.curves)
            plots.grad_norms(curves, runs, figure_stem(output))


rule plot_gradflow_vs_lag:
    input:
        runs=f"{RESULTS}/{{study}}/runs.parquet",
        gradflow=f"{RESULTS}/{{study}}/gradflow.parquet",
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
        with logged(log[0]):
            runs, flow = pd.read_parquet(input.runs), pd.read_parquet(input.gradflow)
            plots.gradflow_vs_lag(flow, runs, figure_stem(output))
