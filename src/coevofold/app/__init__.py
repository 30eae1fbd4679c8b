"""Applications: the coevofold command (cli), the web server (serve), the HTML report, quickstart and benchmark runs."""
