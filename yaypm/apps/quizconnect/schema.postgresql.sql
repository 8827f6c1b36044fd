-- quizconnect callees (PostgreSQL).
CREATE TABLE IF NOT EXISTS callees (
    id SERIAL PRIMARY KEY,
    caller VARCHAR(128) NOT NULL,
    callee VARCHAR(128) NOT NULL,
    pin VARCHAR(32) NOT NULL
);
CREATE INDEX IF NOT EXISTS callees_caller ON callees (caller)
