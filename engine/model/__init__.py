"""The generative model, its inference configuration and layout."""
