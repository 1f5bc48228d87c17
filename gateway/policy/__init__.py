"""The policy: a pure decision over (request, policy, facts), every violation named."""
