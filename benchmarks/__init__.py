"""Benchmarks: pulumi-iterative side by side with the Terraform provider's method."""
