"""The web dashboard's server side: what serving it needs (files, headers, config) and publishing it to AWS."""
