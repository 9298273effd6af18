-- ChirpStack v4's schema searches names with trigram indexes.
create extension if not exists pg_trgm;
