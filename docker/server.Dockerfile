# LeKiwi Fleet server: a plain Python image, no ROS needed.
# Build from the repository root:  docker build -f docker/server.Dockerfile -t lekiwi-fleet-server .
FROM python:3.11-slim

RUN useradd --system --uid 10001 --home-dir /var/lib/lekiwi --create-home lekiwi
WORKDIR /opt/lekiwi
COPY src/lekiwi_fleet_server ./lekiwi_fleet_server
RUN pip install --no-cache-dir ./lekiwi_fleet_server

USER lekiwi
# Inside the container the server listens on all interfaces; publish the ports deliberately.
ENV LEKIWI_DATA_DIR=/var/lib/lekiwi \
    LEKIWI_API_HOST=0.0.0.0 \
    LEKIWI_GATEWAY_HOST=0.0.0.0
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"
CMD ["lekiwi-fleet-server", "serve"]
