-- holds_active_by_section duplicated what the primary key (section_no, slot)
-- already serves: a section's holds are read by its section_no, all of them,
-- at start and when a section reloads. Worse, naming `status` in its
-- predicate made every status change (released, expired, booked) a non-HOT
-- update that rewrote every index of the row.
DROP INDEX IF EXISTS holds_active_by_section;
