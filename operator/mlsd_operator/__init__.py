"""mlsd-serving operator: the ModelDeployment API, builders and the kopf operator."""
