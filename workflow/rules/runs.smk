# One job per run: `rnnbench run` trains it and writes its three files atomically (summary last).


rule train_run:
    output:
        curve=f"{RESULTS}/{{study}}/runs/{{run}}/curve.parquet",
        gradflow=f"{RESULTS}/{{study}}/runs/{{run}}/gradflow.parquet",
        summary=f"{RESULTS}/{{study}}/runs/{{run}}/summary.parquet",
    params:
        python=PYTHON,
        config_json=run_config_json,
        out_dir=lambda wildcards, output: str(Path(output.summary).parent),
    log:
        f"{RESULTS}/{{study}}/logs/train_run/{{run}}.log",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/rnnbench.yaml"
    shell:
        "OMP_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads} "
        "{params.python} -m rnnbench run --json {params.config_json} --out {params.out_dir} > {log} 2>&1"


# Ensemble jobs (study key `ensemble.enabled`): one job trains a group of compatible runs at once
# (rnnbench.ensemble, stacked weights; the GPU engine) and writes every member's files.
rule group_spec:
    output:
        f"{RESULTS}/{{study}}/ensembles/{{group_id}}.json",
    params:
        spec=group_spec_json,
    log:
        f"{RESULTS}/{{study}}/logs/group_spec/{{group_id}}.log",
    localrule: True
    run:
        with logged(log[0]):
            from rnnbench.records import write_text

            write_text(params.spec, output[0])


rule train_ensemble:
    input:
        spec=f"{RESULTS}/{{study}}/ensembles/{{group_id}}.json",
    output:
        done=f"{RESULTS}/{{study}}/ensembles/{{group_id}}.done",
    params:
        python=PYTHON,
        out_dirs=group_out_dirs,
    log:
        f"{RESULTS}/{{study}}/logs/train_ensemble/{{group_id}}.log",
    threads: 2
    resources:
        gpu=1,
        mem_mb=8000,
    conda:
        "../envs/rnnbench.yaml"
    shell:
        "{params.python} -m rnnbench.ensemble --json-file {input.spec} --out-dirs {params.out_dirs} "
        "--threads {threads} > {log} 2>&1 && cp {input.spec} {output.done}"
