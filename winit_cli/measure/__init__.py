"""What a recorded step measures: the per-layer quantities of layers.csv (probes.py, with the
step's tensors kept by recorder.py and reduced by norms.py), the columns normalization layers
and residual streams add (family_probes.py), weight and gradient histograms (histograms.py), and
the input-output Jacobian's singular values at step 0 (jacobian.py, slq.py)."""
