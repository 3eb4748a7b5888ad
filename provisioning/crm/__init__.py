"""Records a member owns: leads, contacts, customers and tasks (R6). Not built yet."""
