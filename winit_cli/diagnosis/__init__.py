"""What a run's measurements mean: the verdict (verdict.py: healthy, vanishing, exploding or
diverged, where and when) and theory beside measurement (predict.py for the plain MLP and the
scheme table, predict_families.py for normalization, dropout and residual nets). This is the
bridge from a run's Config to the pure maths of winit_cli/theory/."""
