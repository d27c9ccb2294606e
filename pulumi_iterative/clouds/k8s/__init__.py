"""cloud="k8s": an Indexed Job per task on the cluster of the user's kubeconfig."""
