-- Service apps that call the Platform API (add-on providers): their dynos get OURO_API_URL.
ALTER TABLE apps ADD COLUMN service_api_access BIGINT NOT NULL DEFAULT 0;
