"""A local autoscaling Ray cluster whose node types mirror ``cluster/aws.yaml`` (Ray's fake multi-node
provider: the autoscaler starts and stops "nodes" on this machine with the resources their type declares)."""
