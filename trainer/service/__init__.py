"""The training service: a FastAPI app (`service.app:app`) that retrains the penguin models on
request, checks each candidate against the version published now, and publishes the ones that
are not worse to the model repository (S3 or a directory) with golden examples that oxiserve
reproduces before it adopts them. See `docs/retraining.md`.
"""
