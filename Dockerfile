# The gateway with a mounted config:
#   docker build -t ami-gateway .
#   docker run -v $PWD/site:/etc/ami-gateway:ro -v ami-data:/data -p 8080:8080 ami-gateway
# In the mounted gateway.toml set data_dir = "/data" and, to reach the portal from
# outside the container, [api] host = "0.0.0.0". The portal API has no authentication
# yet (customer logins come with the portal work): publish the port only behind a
# reverse proxy that authenticates, or on a private network.
FROM python:3.11-slim

RUN useradd --system --uid 10001 --home-dir /data gateway \
 && mkdir -p /data /etc/ami-gateway && chown gateway /data
WORKDIR /app
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY gateway ./gateway
COPY edge ./edge
COPY config ./config
# constraints.txt pins every runtime dependency to the versions the tests passed with.
RUN pip install --no-cache-dir -c constraints.txt .

ENV AMI_PROFILES_DIR=/app/config/devices \
    PYTHONUNBUFFERED=1
USER gateway
VOLUME ["/data"]
EXPOSE 8080
# Healthy when the store answers through the API (port as configured; 8080 by default).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"
ENTRYPOINT ["ami-gateway"]
CMD ["run", "--config", "/etc/ami-gateway/gateway.toml"]
