"""The protocols: a codec and a transport each, over the data plane."""
