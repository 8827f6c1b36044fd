-- quizconnect callees (MySQL/MariaDB), the tutorial's table.
CREATE TABLE IF NOT EXISTS callees (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT,
    caller VARCHAR(128) NOT NULL,
    callee VARCHAR(128) NOT NULL,
    pin VARCHAR(32) NOT NULL,
    PRIMARY KEY (id),
    KEY callees_caller (caller)
)
