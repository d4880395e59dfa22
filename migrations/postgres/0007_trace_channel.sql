-- How each step came in: api (a caller), timer, or system (the engine on its own).
ALTER TABLE trace ADD COLUMN channel TEXT NOT NULL DEFAULT 'api';
