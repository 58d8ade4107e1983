"""Running a search: settings checked, Ray started, data prepared, trials tuned, confirmed and resumed."""
