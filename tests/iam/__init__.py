"""The IAM proof (issue 29 §1): every AWS call a Lambda function or the operator CLI makes across the test
suite is recorded, then evaluated against the IAM policy it runs with — both ways (nothing refused,
nothing granted that no call uses). See docs/deploy.md, "IAM, proven against the tests"."""
