# rnnbench: train every run of a study, aggregate the results, draw the figures.
#
#   snakemake --profile profiles/default                       # the default study (config/config.yaml)
#   snakemake --profile profiles/default --configfile config/studies/pascanu2013.yaml
#   snakemake --profile profiles/default --report results/default/report.html
#
# A study file given with --configfile replaces config/config.yaml (it is not merged into it);
# --config key=value still overrides single keys.
from snakemake.utils import min_version

min_version("9.0")


if "study" not in config:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/runs.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/paper.smk"


onsuccess:
    cancel_pending_timers()


onerror:
    cancel_pending_timers()


rule all:
    input:
        final_outputs(),
        PAPER_OUTPUTS,
    default_target: True
