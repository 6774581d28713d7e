# syntax=docker/dockerfile:1
# Multi-stage build of the trueup daemon: a static binary on distroless, as a
# non-root user. Nothing at runtime needs a shell, git or gpg (go-git and the
# SOPS libraries are linked in), so the final stage has neither.
#
# Base images are pinned by tag (what it is) and digest (which one it is):
# a moved tag cannot change a release's layers. Bump both deliberately, e.g.
#   crane digest golang:1.26.8-bookworm
# tools/ship/dockerfile_test.go enforces the pins and the runtime rules.

FROM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/trueup ./cmd/trueup

FROM gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
COPY --from=build /out/trueup /usr/local/bin/trueup
# 65532 is distroless's nonroot user; numeric, so runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080 9292
ENTRYPOINT ["/usr/local/bin/trueup"]
CMD ["run", "--config", "/etc/trueup/config/trueup.yaml", "--cache-dir", "/var/cache/trueup"]
