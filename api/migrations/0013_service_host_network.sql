-- Platform components that run as dynos on the host's network (the API, the router: they
-- listen on the host's ports; issue 6).
ALTER TABLE apps ADD COLUMN service_host_network BIGINT NOT NULL DEFAULT 0;
