module github.com/stateful-migration/stateful-migration/hack/e2e/pause

go 1.24
