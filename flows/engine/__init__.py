"""The runtime: journeys and members, step execution, delivery, the Prefect compiler."""
