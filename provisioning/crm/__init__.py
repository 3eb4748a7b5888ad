"""Records a member owns (R6): leads, contacts, customers and tasks with a responsible member;
notes and messages on a lead that keep their author; seeding them in bulk."""
