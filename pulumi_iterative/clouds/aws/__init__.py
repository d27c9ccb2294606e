"""cloud="aws": an Auto Scaling group of EC2 machines and an S3 bucket per task."""
