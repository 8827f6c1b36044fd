"""Applications built on yaypm: quizconnect."""
