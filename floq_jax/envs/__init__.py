"""OGBench environments: vectorised envs (``envs``) and the evaluator that runs episodes with a policy (``evaluation``)."""
