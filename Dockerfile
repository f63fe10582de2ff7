# The gateway with a mounted config:
#   docker build -t ami-gateway .
#   docker run -v $PWD/site:/etc/ami-gateway:ro -v ami-data:/data -p 8080:8080 ami-gateway
# In the mounted gateway.toml set data_dir = "/data" and, to reach the portal from
# outside the container, [api] host = "0.0.0.0".
FROM python:3.11-slim

RUN useradd --system --uid 10001 --home-dir /data gateway \
 && mkdir -p /data /etc/ami-gateway && chown gateway /data
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
COPY edge ./edge
COPY config ./config
RUN pip install --no-cache-dir .

ENV AMI_PROFILES_DIR=/app/config/devices \
    PYTHONUNBUFFERED=1
USER gateway
VOLUME ["/data"]
EXPOSE 8080
ENTRYPOINT ["ami-gateway"]
CMD ["run", "--config", "/etc/ami-gateway/gateway.toml"]
