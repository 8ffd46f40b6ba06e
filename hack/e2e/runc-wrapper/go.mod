module github.com/stateful-migration/stateful-migration/hack/e2e/runc-wrapper

go 1.24
