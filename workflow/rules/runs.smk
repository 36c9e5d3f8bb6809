# One job per run: `rnnbench run` trains it and writes its three files atomically (summary last).


rule train_run:
    output:
        curve=f"{RESULTS}/{{study}}/runs/{{run_id}}/curve.parquet",
        gradflow=f"{RESULTS}/{{study}}/runs/{{run_id}}/gradflow.parquet",
        summary=f"{RESULTS}/{{study}}/runs/{{run_id}}/summary.parquet",
    params:
        config_json=run_config_json,
        out_dir=lambda wildcards, output: str(Path(output.summary).parent),
    log:
        f"{RESULTS}/{{study}}/logs/train_run/{{run_id}}.log",
    threads: 1
    resources:
        mem_mb=2000,
    conda:
        "../envs/rnnbench.yaml"
    shell:
        "OMP_NUM_THREADS={threads} NUMBA_NUM_THREADS={threads} "
        "rnnbench run --json {params.config_json} --out {params.out_dir} > {log} 2>&1"
