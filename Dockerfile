# One image for the hub manager, the agent and the mover.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags "-X github.com/stateful-migration/stateful-migration/pkg/version.Version=${VERSION}" \
    -o /out/stateful-migration ./cmd/stateful-migration

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/stateful-migration /stateful-migration
USER 65532:65532
ENTRYPOINT ["/stateful-migration"]
