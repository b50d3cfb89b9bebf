"""The HTTP surface: every REST view, above the apps (as Saleor's `saleor/graphql` sits above
its domain packages). A view here may join the write model (accounts, ledger) and the read
model (projections), which the apps themselves never do: `apps.ledger` does not import
`apps.projections`. Generic HTTP helpers that know no app stay in `creditledger.api`."""
