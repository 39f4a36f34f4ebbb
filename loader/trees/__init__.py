"""Tree ensembles (XGBoost, LightGBM, scikit-learn forests) on a float64-capable engine of lockgate's
own, served only where a check at deploy proves its answers bit-identical to the native model's."""
