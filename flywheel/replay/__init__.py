"""Counterfactual replay: other models' answers to logged prompts, graded, stored like any other traffic."""
