-- Pages of one process's instances in id order (KPIs, exports, migrations) come from this
-- index; with only (process, state, id) each page sorted every remaining instance.
CREATE INDEX instances_by_process ON instances (process, id);
