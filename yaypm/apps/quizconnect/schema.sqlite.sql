-- quizconnect callees (SQLite): caller = the dialled number, as in the SEMS DSM tutorial.
CREATE TABLE IF NOT EXISTS callees (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    caller VARCHAR(128) NOT NULL,
    callee VARCHAR(128) NOT NULL,
    pin VARCHAR(32) NOT NULL
);
CREATE INDEX IF NOT EXISTS callees_caller ON callees (caller)
