"""What a stage of the bridge is in AWS, written once: names, IAM policy, CloudFormation resources, dashboard,
bootstrap, secret writes and the Braze webhook templates."""
