"""Which model is good enough, and cheapest, for a prompt: trained on a release's `router_examples`, scored on
its test split against every single model, random mixes and the oracle, stored beside the releases."""
