"""``vl-serve render``: deployment files for Compose, Kubernetes and LeaderWorkerSet from one config.

Each target is a function of the validated config (:mod:`vl_serve.render.shape`): the same image
(deploy/Dockerfile on the vLLM release CI tests), the API key and other variables from a secret or
the environment, never a value in a file, GPUs from the parallelism, probes, drain timings and
Prometheus scraping.
"""
