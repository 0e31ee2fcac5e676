# Build: the Graph SDK takes a few minutes to compile; the cache mount keeps it.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/responder ./cmd/responder

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/responder /usr/local/bin/responder
COPY playbooks /etc/responder/playbooks
ENV RESPONDER_PLAYBOOKS=/etc/responder/playbooks \
    RESPONDER_DATA_DIR=/var/lib/responder
USER nonroot
ENTRYPOINT ["/usr/local/bin/responder"]
CMD ["serve"]
