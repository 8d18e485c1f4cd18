-- Recovery reads live holds only (active ones and bookings) and each
-- section's last hold: a section forgets holds that ended and reads one back
-- by its primary key when it is asked. This partial index serves that read,
-- so a restart reads what is live, not every hold ever made. A hold leaves
-- it when it ends; an insert adds one entry.
CREATE INDEX holds_live ON holds (section_no, slot)
  WHERE status IN ('active', 'booked');
