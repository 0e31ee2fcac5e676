# Build: the Graph SDK takes a few minutes to compile; the cache mount keeps it.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/responder ./cmd/responder \
    && mkdir -p /out/data

# The runtime stage is all .ci/compose-smoke builds (FROM a local stand-in of
# this base, with the binary built on the host): keep anything a stage needs
# here to copies from /out of the build stage, files of the repository and
# ENV/USER lines.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/responder /usr/local/bin/responder
COPY playbooks /etc/responder/playbooks
# A named volume mounted on an image directory starts as a copy of it, owner
# included: without this the data directory of a fresh volume is root's and
# the nonroot engine cannot write its keys or its store there.
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/responder
ENV RESPONDER_PLAYBOOKS=/etc/responder/playbooks \
    RESPONDER_DATA_DIR=/var/lib/responder
USER nonroot
ENTRYPOINT ["/usr/local/bin/responder"]
CMD ["serve"]
