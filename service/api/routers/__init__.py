"""One small router per resource; each route translates JSON to an estimator call and back."""
