# syntax=docker/dockerfile:1
# Multi-stage build of the trueup daemon: a static binary on distroless, as a
# non-root user. Nothing at runtime needs a shell, git or gpg.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/trueup ./cmd/trueup

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/trueup /usr/local/bin/trueup
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/trueup"]
CMD ["run", "--config", "/etc/trueup/trueup.yaml"]
